"""A minimal Django project whose view hands an e-mail to an amqpq worker."""
