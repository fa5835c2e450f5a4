"""How the service is packaged and started: images, manifests, the local launcher."""
