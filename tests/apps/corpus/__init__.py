"""The transparency corpus: one app per framework, each answering the same requests with the same bytes.

Every view that receives data answers with a description of exactly what it saw (:mod:`.seen`), so a response
that is byte-identical with recording on and off proves the view saw identical request data too.
"""
