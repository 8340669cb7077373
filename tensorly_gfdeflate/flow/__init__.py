"""The flow engine: settings, integration, epochs, model selection, verdict, trace and the run loop."""
