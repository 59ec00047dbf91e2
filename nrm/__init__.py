"""The composition root: the `nrm` command, the process supervisor, the embedded servers, one
service process, the codec server and backups. It may import everything; nothing imports it."""
