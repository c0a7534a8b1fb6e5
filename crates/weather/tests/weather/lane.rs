//! The multiservice release carried by a lane in the request
//! (istio/stages/multiservice-lane): the gateway sets `baggage: lane=v2` for
//! testers and removes it for everyone else, the services pass it on, and
//! forecast's route matches it. Through `weather up`, testers get the whole v2
//! chain, everyone else v1, and a lane a client sends itself changes nothing.

use crate::{chain, up_with_admin};

#[tokio::test]
async fn the_lane_is_set_at_the_edge_passed_on_and_never_taken_from_a_client() {
    let (running, server) = up_with_admin("multiservice-lane").await;
    let ingress = running.ingress;
    let v2 = "frontend:v2,forecast:v2,recommendation:v1";
    let v1 = "frontend:v1,forecast:v1";
    assert_eq!(chain(ingress, &[("cookie", "user=tester")]).await, v2);
    assert_eq!(chain(ingress, &[]).await, v1);
    // A client that sends the lane itself: removed at the edge.
    assert_eq!(chain(ingress, &[("baggage", "lane=v2")]).await, v1);
    assert_eq!(
        chain(ingress, &[("baggage", "user.tier=gold, lane=v2")]).await,
        v1
    );
    // A tester whose own baggage says otherwise: the edge's lane wins.
    assert_eq!(
        chain(
            ingress,
            &[("cookie", "a=1; user=tester"), ("baggage", "lane=v1,x=y")]
        )
        .await,
        v2
    );
    running.shutdown().await;
    server.shutdown().await.unwrap();
}
