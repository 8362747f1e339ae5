"""The API's routes, one router per area; :func:`api.app.create_app` includes them all."""
