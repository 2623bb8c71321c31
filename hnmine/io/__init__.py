"""Reading inputs and writing outputs: readers, layouts, manifests, verified cache files."""
