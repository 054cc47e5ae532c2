"""The customers' pages: the install wizard and the devices pages (issue 12). Each view
fetches through the access helpers and writes through the services, like the API."""
