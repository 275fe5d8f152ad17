"""Example families installed with gankd, so that a config can name them and a user can copy them.

:mod:`gankd.examples.points` is a complete family for 2-D points (hooks, data factory, metric factory) in one
file: ``family: gankd.examples.points:PointHooks`` in a run config (``docs/config.md``), the family of the
``docs/own_gan.md`` guide, and the file to copy when writing your own (``python -m gankd.examples.points``
prints where it is). It lives in the package rather than beside the tests because ``pip install gankd`` ships
the package only.
"""
