"""The fakes (Azurite, AML's REST API, the Durable host) and their own tests."""
