from liftcam.engine.errors import LiftcamError  # noqa
