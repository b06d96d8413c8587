"""Several hosts on Redis: an agent per host runs its processes; stateless replicas serve
the API and the dashboard for all of them."""
