"""Pure HTTP caching logic: RFC 9110 conditionals, RFC 9111, RFC 5861, RFC 9211, RFC 9213.

No I/O, no clock reads, no logging: functions take ``now`` and return values. Only the standard library and
``proxy.messages`` may be imported here (a test enforces it).
"""
