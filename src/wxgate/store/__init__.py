"""Durable state behind one contract (base.Store): the SQLite and Redis backends."""
