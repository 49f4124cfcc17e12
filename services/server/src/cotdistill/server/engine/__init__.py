"""Inference engines behind one narrow async interface (:class:`~.base.Engine`)."""
