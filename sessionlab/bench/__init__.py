"""The price of correctness, measured.

``throughput``: operations per second of each manager against the ``baselines``;
``costs``: memory, exploration and checking time, requests over HTTP.
"""
