"""OCI documents and the registry: media types, the distribution API client, credentials by reference."""
