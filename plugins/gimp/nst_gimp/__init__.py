"""The GIMP 3 plug-in (its files are copied into GIMP's plug-ins folder by `nst-core gimp install`)."""
