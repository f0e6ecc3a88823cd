//! Re-issuing an enrolment code: `POST /api/v1/registrations/{id}/code` (security officer).
//!
//! For a registration that is approved but has not enrolled, and whose code is not claimed by
//! an enrolment in progress. Its code may have expired, be burnt by wrong attempts, or still
//! be good and unused (lost, or seen by someone it should not have been): in every case the old
//! code stops working at once, because its hash is replaced or deleted in the same
//! transaction.
//!
//! The rule:
//! - **single control** (`approvals_needed` = 1, the enterprise profiles): one security
//!   officer's request gives a new one-time code (shown once, stored hashed, a fresh expiry
//!   and attempt count) — the same officer could have approved the registration alone.
//! - **dual control** (`approvals_needed` = 2, `agency`): a new code would let one officer
//!   undo the second officer's check, so the request withdraws the code and the approvals and
//!   puts the registration back to `pending`; two different officers approve again (the
//!   requesting officer may be one of them), and the second approval gives the new code.
//!
//! A registration that is pending, enrolled, or whose code an enrolment has claimed is a
//! conflict (409). Audited as `CredentialChanged` on the registration, refusals included.

use signer_lib::audit::EventType;

use super::{Approval, Ca, Caller, Role, registration_id, require};
use crate::Error;

impl Ca {
    /// Re-issues the enrolment code of an approved, not yet enrolled registration (security
    /// officer): a new code under single control, back to `pending` under dual control (see
    /// the module documentation).
    ///
    /// # Errors
    /// [`Error::Forbidden`]; [`Error::NotFound`]; [`Error::Conflict`] when the registration is
    /// pending or enrolled or its code is claimed by an enrolment; [`Error::AuditUnavailable`];
    /// [`Error::Store`].
    pub async fn reissue_code(&self, caller: &Caller, registration_id: &str) -> Result<Approval, Error> {
        let object = registration_id.trim().to_ascii_lowercase();
        let result = self.reissue_code_inner(caller, registration_id).await;
        self.finish(caller, EventType::CredentialChanged, Some(&object), result).await
    }

    async fn reissue_code_inner(&self, caller: &Caller, id: &str) -> Result<Approval, Error> {
        require(caller, &[Role::SecurityOfficer], "re-issue an enrolment code", "security_officer")?;
        let id = registration_id(id)?;
        let store = &self.inner.store;
        let now = self.now();
        let mut tx = store.begin().await?;
        // Locks the row (PostgreSQL), serialising this with approvals of the registration.
        if !store.touch_registration(&mut tx, &id, now.unix_timestamp()).await? {
            return Err(Error::NotFound { what: format!("registration {id}") });
        }
        let row = store
            .registration(&mut tx, &id)
            .await?
            .ok_or_else(|| Error::NotFound { what: format!("registration {id}") })?;
        let conflict = |why: &str| Error::Conflict { what: format!("registration {id} {why}") };
        match row.status.as_str() {
            "approved" => {}
            "pending" => return Err(conflict("is pending: approve it to get a code")),
            other => return Err(conflict(&format!("is {other}: its code was used"))),
        }
        match store.code_in(&mut tx, &id).await? {
            Some(code) if code.used_at.is_none() && code.serial.is_none() => {}
            _ => return Err(conflict("has its code claimed by an enrolment")),
        }

        let needed = u32::try_from(row.approvals_needed).unwrap_or(u32::MAX);
        let outcome = if needed > 1 {
            if !store.reset_to_pending(&mut tx, &id, now.unix_timestamp()).await? {
                return Err(conflict("has its code claimed by an enrolment"));
            }
            Approval::Pending { registration_id: id.clone(), approvals: 0, needed }
        } else {
            let (code_row, approval) = self.fresh_code(&id, now);
            if !store.replace_code(&mut tx, &code_row).await? {
                return Err(conflict("has its code claimed by an enrolment"));
            }
            approval
        };
        self.audit(caller, EventType::CredentialChanged, Some(&id), Ok(())).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}
