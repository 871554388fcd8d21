//! Foreign routers: routers that join the mesh as spokes without running meshd (MikroTik
//! RouterOS, OpenWrt or Linux with wg-quick, a BIRD 2 or FRR box). Their core hosts them: it
//! terminates their WireGuard tunnel and holds an iBGP session with them, the router being its
//! route-reflector client, and [`export`] prints the configuration the router needs for that.

pub mod export;
