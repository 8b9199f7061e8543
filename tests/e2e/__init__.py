"""End-to-end tests against a real local Kubernetes control plane (marker ``e2e``)."""
