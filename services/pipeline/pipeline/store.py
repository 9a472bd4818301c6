"""Tables of the pipeline service's own database."""

from ooda.db import Messaging, new_metadata

metadata = new_metadata()
messaging = Messaging(metadata)
