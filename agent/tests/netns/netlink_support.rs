//! Helpers shared by the netns tests that talk rtnetlink from inside a namespace
//! (included with `#[path]`).

use std::time::Duration;

use ipnet::IpNet;
use meshd::netlink::Netlink;
use netns_tests::Namespace;

pub fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// Runs `f` with a netlink connection inside `namespace`.
pub fn with_netlink<T: Send + 'static>(
    namespace: &Namespace,
    f: impl AsyncFnOnce(&Netlink) -> T + Send + 'static,
) -> T {
    namespace.run_in(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let netlink = Netlink::connect().expect("connect to rtnetlink");
            tokio::time::timeout(Duration::from_secs(20), f(&netlink))
                .await
                .expect("netlink operations took more than 20 s")
        })
    })
}
