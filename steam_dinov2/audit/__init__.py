"""The audit: CleanVision issues plus embedding near duplicates -> an exclusion list
(``audit_banners``)."""
