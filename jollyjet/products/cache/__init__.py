"""The product cache adapter: CachedProductRepository and the parts only it uses.

repository.py (every cached read and invalidation) → read_through.py (single flight)
and writer.py (version-guarded writes) → codec.py (bytes); categories.py is the
category-list memo. Generic Redis pieces live in jollyjet/cache/.
"""
