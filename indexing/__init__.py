"""The index pipeline: FAISS index versions built from the embeddings, verified, published and searched.

Packages, bottom up (docs/indexing.md, The code): store/ (the versions on disk and in object storage),
relations/ and search/ (on the store), build/ (on those); pipeline.py, verify.py and cli.py on top.
"""
