module github.com/spraywatch/spraywatch/testdata/bench/nxadm

go 1.26.8

require (
	github.com/nxadm/tail v1.4.11
	github.com/spraywatch/spraywatch v0.0.0
)

require (
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	golang.org/x/sys v0.50.0 // indirect
	gopkg.in/tomb.v1 v1.0.0-20141024135613-dd632973f1e7 // indirect
)

replace github.com/spraywatch/spraywatch => ../../..
