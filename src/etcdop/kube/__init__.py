"""A small controller runtime on kr8s: cache, work queue, leader lease, events, status."""
