"""The demo model of the ledviz app: synthetic long reports (data), training and evaluation.

`ledviz.demo.data` is pure Python; `train` and `evaluate` need torch and the ledviz model.
A trained checkpoint lives in `ledviz/demo/model/`.
"""
