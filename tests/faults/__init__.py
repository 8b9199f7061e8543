"""Fault tier: a real Prometheus scraping the simulated fleet, a fault-injecting proxy in front of
it, and the real app (real rules, real Prometheus backend) behind the proxy; Cloud Monitoring and
the Google token endpoint misbehaving (marker ``faults``).

The fleet and Prometheus fixtures are :mod:`tests.support.fixtures` (the integration tier's known
values). A missing ``/usr/bin/prometheus`` makes the fixtures ERROR with a message naming the fix
(``make prometheus``).
"""
