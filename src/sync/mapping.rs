//! Service and team mapping: the config's `[[service]]` entries applied to records, as the runner
//! stores them ([`map_service`]) and again to the whole lake after the mapping changed ([`remap`]).
//!
//! Mapping uses the config and the records alone: it must not send a request, and a record the
//! mapping does not know keeps what its connector gave it rather than losing it.

use tandem_connectors::model::Record;

use crate::config::{Config, ServiceConfig};
use crate::store::{Store, StoreError, Tables};

/// Sets a record's service and team from the config mapping: repos for deployments, changes and
/// commits; the source's own service reference (PagerDuty service, Jira component, ServiceNow CI)
/// for incidents, tickets and change requests. A record the mapping does not know keeps what its
/// connector gave it (connectors give none, except file imports that name services).
pub fn map_service(config: &Config, record: &mut Record) {
    let by_ref = |source: &str, service_ref: Option<&str>| service_of_ref(config, source, service_ref);
    match record {
        Record::Deployment(r) => assign(&mut r.service, &mut r.team, config.service_of_repo(&r.repo)),
        Record::Change(r) => assign(&mut r.service, &mut r.team, config.service_of_repo(&r.repo)),
        Record::Commit(r) => assign(&mut r.service, &mut r.team, config.service_of_repo(&r.repo)),
        Record::Incident(r) => assign(
            &mut r.service,
            &mut r.team,
            by_ref(&r.source, r.service_ref.as_deref()),
        ),
        Record::Ticket(r) => assign(
            &mut r.service,
            &mut r.team,
            by_ref(&r.source, r.service_ref.as_deref()),
        ),
        Record::ChangeRequest(r) => assign(
            &mut r.service,
            &mut r.team,
            by_ref(&r.source, r.service_ref.as_deref()),
        ),
        Record::TicketTransition(_) => {}
    }
}

/// The service a source's own reference (PagerDuty service, Jira component, ServiceNow CI, repo)
/// maps to, by the kind of the source the record came from.
fn service_of_ref<'c>(
    config: &'c Config,
    source: &str,
    service_ref: Option<&str>,
) -> Option<&'c ServiceConfig> {
    let service_ref = service_ref?;
    let kind = config.sources.iter().find(|s| s.name() == source)?.kind();
    config.service_of(kind, service_ref)
}

fn assign(service: &mut Option<String>, team: &mut Option<String>, found: Option<&ServiceConfig>) {
    if let Some(s) = found {
        *service = Some(s.name.clone());
        team.clone_from(&s.team);
    }
}

/// Re-applies the config's service mapping to every stored record, without any request: after a
/// `[[service]]` change, the tables read as if synced with the new mapping. Returns the number of
/// records whose service or team changed.
pub fn remap(config: &Config, store: &Store) -> Result<usize, StoreError> {
    let mut tables = Tables::default();
    let mut changed = 0;
    for record in Tables::read(store)? {
        let mut mapped = record.clone();
        clear_service(config, &mut mapped);
        map_service(config, &mut mapped);
        if mapped != record {
            changed += 1;
        }
        tables.push(mapped);
    }
    store.replace_all(tables)?;
    Ok(changed)
}

/// Forgets the mapped service of records whose connector never sets one, so a mapping removed
/// from the config is removed from the data too. File imports keep the service they name.
fn clear_service(config: &Config, record: &mut Record) {
    let source = match record {
        Record::Deployment(r) => &r.source,
        Record::Change(r) => &r.source,
        Record::Commit(r) => &r.source,
        Record::Incident(r) => &r.source,
        Record::Ticket(r) => &r.source,
        Record::ChangeRequest(r) => &r.source,
        Record::TicketTransition(_) => return,
    };
    let from_file = config
        .sources
        .iter()
        .any(|s| s.name() == source && s.kind() == "file");
    if from_file {
        return;
    }
    let (service, team) = match record {
        Record::Deployment(r) => (&mut r.service, &mut r.team),
        Record::Change(r) => (&mut r.service, &mut r.team),
        Record::Commit(r) => (&mut r.service, &mut r.team),
        Record::Incident(r) => (&mut r.service, &mut r.team),
        Record::Ticket(r) => (&mut r.service, &mut r.team),
        Record::ChangeRequest(r) => (&mut r.service, &mut r.team),
        Record::TicketTransition(_) => return,
    };
    *service = None;
    *team = None;
}
