"""The data folder: its layout (the only module that spells paths in it), atomic files and the lock,
ids, the manifest and which images a stage works on, image decoding limits, HTTP with deadlines,
progress bars. Imports no other stage."""
