//! Root tests in network namespaces: real TUN devices, kernel routes and real peers.
