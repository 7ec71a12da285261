package main

// The fallback roots make sitesize able to fetch https from a container image that has no
// /etc/ssl (deploy/image builds one on an empty base): Go uses them only when the system
// has no certificate roots of its own, so a host's roots, when it has some, still win.
import _ "golang.org/x/crypto/x509roots/fallback"
