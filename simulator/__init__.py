"""netpol-simulator: replay recorded traffic against Kubernetes NetworkPolicies."""

__version__ = "0.1.0"
