"""dedl_hello_world: the DestinE Data Lake Hook service's custom-hook demonstrator."""
