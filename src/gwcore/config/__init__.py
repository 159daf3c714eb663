"""Config language: YAML or a mapping in, validated, immutable, typed objects out.

>>> from gwcore.config import load_config
>>> cfg = load_config({"routes": [{"match": {"prefix": "/"},
...                                "direct_response": {"status": 200, "body": "hi"}}]})
>>> cfg.route_count
1
"""

from gwcore.config.errors import ConfigError, ConfigIssue
from gwcore.config.loader import load_config, load_config_file, load_config_text
from gwcore.config.model import (
    Cluster,
    DirectResponseAction,
    ForwardAction,
    GatewayConfig,
    Listener,
    RedirectAction,
    Route,
    RouteAction,
    VirtualHost,
)
from gwcore.config.units import parse_duration, parse_size

__all__ = [
    "Cluster",
    "ConfigError",
    "ConfigIssue",
    "DirectResponseAction",
    "ForwardAction",
    "GatewayConfig",
    "Listener",
    "RedirectAction",
    "Route",
    "RouteAction",
    "VirtualHost",
    "load_config",
    "load_config_file",
    "load_config_text",
    "parse_duration",
    "parse_size",
]
