"""Images: references, registry client, blob store and secure layer apply."""
