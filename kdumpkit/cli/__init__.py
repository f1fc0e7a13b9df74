"""`kdumpkit <verb>`: thin argument parsing; the logic lives in the layers below."""
