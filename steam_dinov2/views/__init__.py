"""What a person looks at: image grids, the side-by-side comparison, match explanations, the
catalogue map and the static site."""
