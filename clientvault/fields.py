"""Bounds of what people type in, shared by the gateway's wire models (early, per-field 422s) and the
services' rules (which enforce them again: a direct gRPC call gets the same answer)."""

NAME_MAX = 200
TITLE_MAX = 200
COMPANY_MAX = 200
EMAIL_MAX = 320
PHONE_MAX = 50
NOTES_MAX = 10_000
DESCRIPTION_MAX = 10_000
SEARCH_MAX = 200
PAGE_MAX = 1_000_000
PAGE_SIZE_MAX = 100
