"""sessionlab: a lab for learning why threaded session code loses data, and how to prove it doesn't."""
