"""Frame sources: GenICam cameras through Harvesters, and the pure bookkeeping around them."""
