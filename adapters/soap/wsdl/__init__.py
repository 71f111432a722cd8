"""WSDLs shipped with the SOAP adapter (a package only so that packaging tools include the files)."""
