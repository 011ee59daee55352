"""The read-only FastAPI search server: seed-compatible routes, search by id/image, duplicates, hot-swap.

It loads the CURRENT index version of the served model, answers searches from
it, and swaps to each newly published version without failing a request. It
never writes an index; `/add_image` only registers a row for the pipeline.
"""
