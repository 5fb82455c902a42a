//! The fake Jira's webhook deliveries: the payloads Jira documents, signed for Jira 10
//! registrations with a secret and plain otherwise, and the test controls for dropping,
//! queueing, reordering and repeating them.

use fake_jira::DeliveryMode;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::fake_jira_events_schema::world;
use super::fake_jira_schema::{PATIENCE, assert_matches_bean, client, send};

/// A webhook receiver: answers 202 and hands over (signature header, body) of each request.
pub(crate) async fn receiver() -> (String, mpsc::UnboundedReceiver<(Option<String>, String)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut bytes = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            let (head, length) = loop {
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), 0);
                }
                bytes.extend_from_slice(&buffer[..n]);
                if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&bytes[..end]).to_string();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    bytes.drain(..end + 4);
                    break (head, length);
                }
            };
            while bytes.len() < length {
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&buffer[..n]);
            }
            let signature = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("x-hub-signature")
                    .then(|| value.trim().to_string())
            });
            let _ = stream
                .write_all(
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = tx.send((signature, String::from_utf8_lossy(&bytes).to_string()));
        }
    });
    (url, rx)
}

#[tokio::test]
async fn changes_are_delivered_signed_or_plain_as_registered() {
    let jira = world().await;
    let (signed_url, mut signed) = receiver().await;
    let (plain_url, mut plain) = receiver().await;
    let ten = format!("{}/rest/jira-webhook/1.0/webhooks", jira.base_url);
    let all = [
        "jira:issue_created",
        "jira:issue_updated",
        "jira:issue_deleted",
        "project_updated",
    ];
    send(
        client()
            .post(&ten)
            .bearer_auth("root-pat")
            .json(&json!({"name": "s", "url": signed_url, "events": all,
        "configuration": {"SECRET": "k3y"}})),
    )
    .await;
    send(
        client()
            .post(&ten)
            .bearer_auth("root-pat")
            .json(&json!({"name": "p", "url": plain_url, "events": all})),
    )
    .await;
    jira.add_project("NEW", "New");

    jira.move_issue_to("PROJ-1", "NEW", "NEW-7").await;
    let (signature, body) = tokio::time::timeout(PATIENCE, signed.recv())
        .await
        .expect("delivered")
        .expect("open");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"k3y").expect("key");
    mac.update(body.as_bytes());
    assert_eq!(
        signature,
        Some(format!(
            "sha256={}",
            hex::encode(mac.finalize().into_bytes())
        ))
    );
    let (unsigned, same) = plain.recv().await.expect("delivered");
    assert_eq!((unsigned, &same), (None, &body));
    let event: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(event["webhookEvent"], "jira:issue_updated");
    assert!(event["timestamp"].is_i64());
    assert_matches_bean("IssueBean", &event["issue"]);
    assert_eq!(
        (&event["issue"]["id"], &event["issue"]["key"]),
        (&json!("10100"), &json!("NEW-7"))
    );
    let items = event["changelog"]["items"]
        .as_array()
        .expect("changelog items");
    let find = |field: &str| {
        items
            .iter()
            .find(|i| i["field"] == field)
            .cloned()
            .expect(field)
    };
    assert_eq!(
        (&find("Key")["fromString"], &find("Key")["toString"]),
        (&json!("PROJ-1"), &json!("NEW-7"))
    );
    assert_eq!(find("project")["from"], "10000");

    jira.change_project_key("NEW", "NEWER").await;
    let (_, body) = signed.recv().await.expect("delivered");
    let event: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (&event["webhookEvent"], &event["project"]["key"]),
        (&json!("project_updated"), &json!("NEWER"))
    );
    let _ = plain.recv().await;

    // Dropped deliveries never arrive; queued ones go out in the order asked, repeats too.
    jira.set_delivery(DeliveryMode::Drop);
    jira.delete_issue("PROJ-2").await;
    jira.set_delivery(DeliveryMode::Queue);
    jira.create_issue("PROJ", "PROJ-4").await;
    jira.edit_summary("PROJ-3", "new words").await;
    assert_eq!(jira.queued_deliveries(), 4, "two changes, two webhooks");
    let sent = jira.deliver_queued(&[2, 0]).await;
    assert!(sent.iter().all(|d| d.status == Some(202)), "{sent:?}");
    let (_, first) = signed.recv().await.expect("delivered");
    let (_, second) = signed.recv().await.expect("delivered");
    assert!(first.contains("jira:issue_updated") && second.contains("jira:issue_created"));
    let before = jira.deliveries().len();
    let again = jira.redeliver(before - 1).await;
    assert_eq!(again.body, second);
    assert_eq!(signed.recv().await.expect("delivered").1, second);
    assert!(
        signed.try_recv().is_err() && plain.try_recv().is_err(),
        "nothing else was sent"
    );
}
