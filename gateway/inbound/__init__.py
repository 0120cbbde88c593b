"""Inbound messages: `handler` stores and acts on each one (opt-outs,
auto-replies, out-of-time answers); `attribution` decides whose it is."""

from gateway.inbound.handler import InboundHandler, keyword

__all__ = ["InboundHandler", "keyword"]
