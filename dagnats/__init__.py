"""dagnats: a durable DAG workflow engine on NATS JetStream."""
