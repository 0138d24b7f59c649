use super::*;

#[test]
fn labelled_counters_follow_their_enums() {
    let m = Metrics::new(Vec::new());
    m.record_auth(AuthOutcome::Unavailable);
    m.record_cache(false);
    m.record_upstream_failure(UpstreamFailure::Timeout);
    m.record_redis(RedisOutcome::Error);
    let text = m.render();
    assert!(text.contains("portcullis_auth_total{result=\"unavailable\"} 1"));
    assert!(text.contains("portcullis_auth_total{result=\"ok\"} 0"));
    assert!(text.contains("portcullis_identity_cache_total{result=\"miss\"} 1"));
    assert!(text.contains("portcullis_upstream_failures_total{kind=\"timeout\"} 1"));
    assert!(text.contains("portcullis_redis_lookups_total{result=\"error\"} 1"));
}

#[test]
fn render_counts_requests_by_route_and_class() {
    let m = Metrics::new(vec!["api".into(), "we\"ird".into()]);
    m.record_request(RouteSlot::Route(0), 200, Duration::from_micros(300));
    m.record_request(RouteSlot::Route(0), 404, Duration::from_millis(3));
    m.record_request(RouteSlot::Unmatched, 404, Duration::from_millis(3));
    let text = m.render();
    assert!(text.contains("portcullis_requests_total{route=\"api\",status=\"2xx\"} 1"));
    assert!(text.contains("portcullis_requests_total{route=\"api\",status=\"4xx\"} 1"));
    assert!(text.contains("portcullis_requests_total{route=\"(unmatched)\",status=\"4xx\"} 1"));
    assert!(text.contains("route=\"we\\\"ird\""));
    assert!(text.contains("portcullis_request_duration_seconds_bucket{le=\"0.0005\"} 1"));
    assert!(text.contains("portcullis_request_duration_seconds_count 3"));
}
