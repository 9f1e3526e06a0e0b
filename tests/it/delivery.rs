//! Delivery that fails for now is queued in the database before the 250,
//! retried with backoff, and lands exactly once.

use crate::on_both_backends;
use crate::support::*;
use boxtrap::store::queue::QueueState;

on_both_backends!(
    a_delivery_that_fails_for_now_is_queued_and_retried_exactly_once,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        // A file where alice's Maildir should be: her delivery cannot happen.
        let maildir = app.maildir("alice@example.test");
        std::fs::create_dir_all(maildir.parent().unwrap()).unwrap();
        std::fs::write(&maildir, b"in the way").unwrap();

        let qid = app
            .send(
                "carol@example.org",
                &["alice@example.test", "bob@example.test"],
                "Subject: q\r\n\r\nqueued\r\n",
            )
            .await;
        assert_eq!(
            app.messages("bob@example.test").len(),
            1,
            "bob is delivered at once"
        );
        let queued = app.store.list_queue().await.unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].queue_id, qid);
        assert_eq!(queued[0].mailbox, "alice@example.test");
        let log = app.mainlog();
        assert!(
            log.contains(&format!(
                "{qid} == alice@example.test <alice@example.test> R=local T=maildir defer:"
            )),
            "{log}"
        );
        assert!(!log.contains(&format!("{qid} Completed")), "{log}");

        // Not due yet: nothing is attempted.
        assert_eq!(app.delivery.run_queue_once().await.unwrap(), 0);
        // Due, still failing: deferred again, with a longer wait.
        app.clock.advance_secs(61);
        assert_eq!(app.delivery.run_queue_once().await.unwrap(), 1);
        let queued = app.store.list_queue().await.unwrap();
        assert_eq!(queued[0].attempts, 2);
        app.clock.advance_secs(61);
        assert_eq!(
            app.delivery.run_queue_once().await.unwrap(),
            0,
            "second wait is 120 s"
        );

        std::fs::remove_file(&maildir).unwrap();
        app.clock.advance_secs(60);
        assert_eq!(app.delivery.run_queue_once().await.unwrap(), 1);
        let alice = app.messages("alice@example.test");
        assert_eq!(alice.len(), 1);
        assert!(String::from_utf8_lossy(&alice[0].1).ends_with("Subject: q\n\nqueued\n"));
        assert!(app.store.list_queue().await.unwrap().is_empty());
        let log = app.mainlog();
        assert!(
            log.contains(&format!(
                "{qid} => alice@example.test <alice@example.test> R=local T=maildir"
            )),
            "{log}"
        );
        assert!(log.contains(&format!("{qid} Completed")), "{log}");
        // Nothing left to do, and nothing delivered twice.
        app.clock.advance_secs(100_000);
        assert_eq!(app.delivery.run_queue_once().await.unwrap(), 0);
        assert_eq!(app.messages("alice@example.test").len(), 1);
    }
);

on_both_backends!(
    a_retry_after_a_crash_between_rename_and_commit_does_not_duplicate,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let maildir = app.maildir("alice@example.test");
        std::fs::create_dir_all(maildir.parent().unwrap()).unwrap();
        std::fs::write(&maildir, b"in the way").unwrap();
        app.send(
            "carol@example.org",
            &["alice@example.test"],
            "Subject: once\r\n\r\nx\r\n",
        )
        .await;
        std::fs::remove_file(&maildir).unwrap();
        app.clock.advance_secs(61);
        app.delivery.run_queue_once().await.unwrap();
        assert_eq!(app.messages("alice@example.test").len(), 1);
        // As if the process died after the rename but before the database knew:
        // the delivery is pending again; the owner has even read the message.
        let (name, _) = app.messages("alice@example.test").remove(0);
        std::fs::rename(
            maildir.join("new").join(&name),
            maildir.join("cur").join(format!("{name}:2,S")),
        )
        .unwrap();
        let qid = name
            .split('.')
            .nth(1)
            .unwrap()
            .split('_')
            .next()
            .unwrap()
            .to_owned();
        let t = app.clock.clone();
        use boxtrap::clock::Clock;
        let now = t.now();
        let data = b"Received: x\r\nSubject: once\r\n\r\nx\r\n".to_vec();
        let alice = app
            .store
            .find_mailbox(&addr_of("alice@example.test"))
            .await
            .unwrap()
            .unwrap();
        app.store
            .enqueue(&boxtrap::store::queue::NewQueuedMessage {
                queue_id: &qid,
                sender: "carol@example.org",
                arrived_at: boxtrap::clock::Timestamp::from_secs(T0),
                data: &data,
                recipients: vec![boxtrap::store::queue::NewQueuedRecipient {
                    rcpt_index: 0,
                    mailbox_id: alice.id,
                    original: "alice@example.test".into(),
                    next_attempt_at: now,
                    last_error: String::new(),
                }],
            })
            .await
            .unwrap();
        assert_eq!(app.delivery.run_queue_once().await.unwrap(), 1);
        assert!(app.store.list_queue().await.unwrap().is_empty());
        assert!(
            app.messages("alice@example.test").is_empty(),
            "no second copy in new/"
        );
        assert_eq!(messages_in(&maildir.join("cur")).len(), 1);
    }
);

on_both_backends!(
    deliveries_that_keep_failing_give_up_after_retry_for,
    |backend| async move {
        let app = TestApp::spawn_on(backend).await;
        let maildir = app.maildir("alice@example.test");
        std::fs::create_dir_all(maildir.parent().unwrap()).unwrap();
        std::fs::write(&maildir, b"in the way").unwrap();
        let qid = app
            .send(
                "carol@example.org",
                &["alice@example.test"],
                "Subject: doomed\r\n\r\nx\r\n",
            )
            .await;
        app.clock.advance_secs(5 * 86400 + 1);
        assert_eq!(app.delivery.run_queue_once().await.unwrap(), 1);
        let q = app.store.list_queue().await.unwrap();
        assert_eq!(q[0].state, QueueState::Failed);
        assert!(app.mainlog().contains(&format!("{qid} ** alice@example.test <alice@example.test> R=local T=maildir: retry time exceeded")));
        app.clock.advance_secs(86400);
        assert_eq!(
            app.delivery.run_queue_once().await.unwrap(),
            0,
            "failed deliveries are not retried"
        );
    }
);
