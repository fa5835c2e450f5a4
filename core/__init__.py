"""Code shared by every process role: settings, credential sealing, logging, names."""
