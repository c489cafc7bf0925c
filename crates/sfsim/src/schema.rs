//! The simulated org's objects and fields, and their describe metadata.
//!
//! Every record stores its values in the order of its object's `fields`; the system fields come
//! first at fixed positions so hot paths (visibility, windows) need no name lookup.

use serde_json::{json, Value as Json};

/// Positions of the system fields every object has.
pub const F_ID: usize = 0;
pub const F_IS_DELETED: usize = 1;
pub const F_CREATED_DATE: usize = 2;
pub const F_CREATED_BY_ID: usize = 3;
pub const F_LAST_MODIFIED_DATE: usize = 4;
pub const F_LAST_MODIFIED_BY_ID: usize = 5;
pub const F_SYSTEM_MODSTAMP: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Id,
    Reference,
    String,
    Textarea,
    Picklist,
    Multipicklist,
    Boolean,
    Int,
    Double,
    Currency,
    Percent,
    Date,
    Datetime,
    Email,
    Phone,
    Url,
}

impl FieldType {
    pub fn wire_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::String => "string",
            FieldType::Textarea => "textarea",
            FieldType::Picklist => "picklist",
            FieldType::Multipicklist => "multipicklist",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
        }
    }

    fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Int => "xsd:int",
            FieldType::Double | FieldType::Currency | FieldType::Percent => "xsd:double",
            FieldType::Date => "xsd:date",
            FieldType::Datetime => "xsd:dateTime",
            _ => "xsd:string",
        }
    }

    /// Whether values of this type are text on the wire (and so quoted in SOQL).
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            FieldType::Id
                | FieldType::Reference
                | FieldType::String
                | FieldType::Textarea
                | FieldType::Picklist
                | FieldType::Multipicklist
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
        )
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent
        )
    }
}

#[derive(Clone, Debug)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    pub ftype: FieldType,
    /// Characters for text types; 0 otherwise.
    pub length: u32,
    pub precision: u32,
    pub scale: u32,
    pub digits: u32,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub defaulted_on_create: bool,
    pub unique: bool,
    pub external_id: bool,
    pub name_field: bool,
    pub custom: bool,
    /// Long text areas cannot appear in WHERE or ORDER BY, as on a real org.
    pub filterable: bool,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
    pub picklist_values: Vec<String>,
    /// A formula or roll-up: computed by the org, never written by clients.
    pub calculated: bool,
    /// The formula of a calculated field, as describe's `calculatedFormula` gives it.
    pub calculated_formula: Option<String>,
}

impl FieldDef {
    /// Salesforce rejects a create without a value for these (REQUIRED_FIELD_MISSING).
    pub fn required_on_create(&self) -> bool {
        !self.nillable
            && self.createable
            && !self.defaulted_on_create
            && self.ftype != FieldType::Boolean
    }

    pub fn describe(&self) -> Json {
        let text_like = self.ftype.is_textual()
            && self.ftype != FieldType::Id
            && self.ftype != FieldType::Reference;
        let byte_length = if self.ftype.is_textual() {
            self.length * 3
        } else {
            0
        };
        let is_id = self.ftype == FieldType::Id;
        let picklist: Vec<Json> = self
            .picklist_values
            .iter()
            .map(
                |v| json!({"active":true,"defaultValue":false,"label":v,"validFor":null,"value":v}),
            )
            .collect();
        json!({
            "aggregatable": self.filterable,
            "aiPredictionField": false,
            "autoNumber": false,
            "byteLength": if is_id || self.ftype == FieldType::Reference { 18 } else { byte_length },
            "calculated": self.calculated,
            "calculatedFormula": self.calculated_formula,
            "cascadeDelete": false,
            "caseSensitive": is_id || self.ftype == FieldType::Reference,
            "compoundFieldName": null,
            "controllerName": null,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": if self.ftype == FieldType::Boolean { json!(false) } else { Json::Null },
            "defaultValueFormula": null,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": false,
            "deprecatedAndHidden": false,
            "digits": self.digits,
            "displayLocationInDecimal": false,
            "encrypted": false,
            "externalId": self.external_id,
            "extraTypeInfo": if self.ftype == FieldType::Textarea { json!("plaintextarea") } else { Json::Null },
            "filterable": self.filterable,
            "filteredLookupInfo": null,
            "formulaTreatNullNumberAsZero": false,
            "groupable": self.filterable && !matches!(self.ftype, FieldType::Datetime | FieldType::Double | FieldType::Currency | FieldType::Percent),
            "highScaleNumber": false,
            "htmlFormatted": false,
            "idLookup": is_id || self.external_id || (self.name_field && text_like),
            "inlineHelpText": null,
            "label": self.label,
            "length": if is_id || self.ftype == FieldType::Reference { 18 } else { self.length },
            "mask": null,
            "maskType": null,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": false,
            "nillable": self.nillable,
            "permissionable": self.nillable && !is_id,
            "picklistValues": picklist,
            "polymorphicForeignKey": false,
            "precision": self.precision,
            "queryByDistance": false,
            "referenceTargetField": null,
            "referenceTo": self.reference_to,
            "relationshipName": self.relationship_name,
            "relationshipOrder": null,
            "restrictedDelete": false,
            "restrictedPicklist": false,
            "scale": self.scale,
            "searchPrefilterable": false,
            "soapType": self.ftype.soap_type(),
            "sortable": self.filterable,
            "type": self.ftype.wire_name(),
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": false
        })
    }
}

#[derive(Clone, Debug)]
pub struct ObjectDef {
    pub name: String,
    pub label: String,
    pub label_plural: String,
    pub key_prefix: String,
    pub custom: bool,
    /// Whether clients may create/update/delete it (User and Organization are read-only here).
    pub writable: bool,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    /// Case-insensitive field lookup, as SOQL and the REST API do it.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.field_index(name).map(|i| &self.fields[i])
    }

    /// The reference field whose relationship name is `rel` (`Account` for `AccountId`).
    pub fn relationship(&self, rel: &str) -> Option<(usize, &FieldDef)> {
        self.fields.iter().enumerate().find(|(_, f)| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(rel))
        })
    }

    pub fn external_id_fields(&self) -> impl Iterator<Item = (usize, &FieldDef)> {
        self.fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.external_id)
    }

    pub fn global_describe(&self, version: &str) -> Json {
        let base = format!("/services/data/v{version}/sobjects/{}", self.name);
        json!({
            "activateable": false,
            "createable": self.writable,
            "custom": self.custom,
            "customSetting": false,
            "deepCloneable": false,
            "deletable": self.writable,
            "deprecatedAndHidden": false,
            "feedEnabled": !self.custom,
            "hasSubtypes": false,
            "isInterface": false,
            "isSubtype": false,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": true,
            "mergeable": matches!(self.name.as_str(), "Account" | "Contact" | "Lead" | "Case"),
            "mruEnabled": true,
            "name": self.name,
            "queryable": true,
            "replicateable": true,
            "retrieveable": true,
            "searchable": true,
            "triggerable": true,
            "undeletable": self.writable,
            "updateable": self.writable,
            "urls": {
                "sobject": base,
                "describe": format!("{base}/describe"),
                "rowTemplate": format!("{base}/{{ID}}"),
            }
        })
    }

    pub fn describe(&self, version: &str, schema: &Schema) -> Json {
        let mut d = self.global_describe(version);
        let children: Vec<Json> = schema
            .objects
            .iter()
            .flat_map(|o| {
                o.fields.iter().filter(|f| f.reference_to.iter().any(|r| r == &self.name) && f.relationship_name.is_some()).map(move |f| {
                    json!({"cascadeDelete":false,"childSObject":o.name,"deprecatedAndHidden":false,"field":f.name,
                           "junctionIdListNames":[],"junctionReferenceTo":[],"relationshipName":null,"restrictedDelete":false})
                })
            })
            .collect();
        let obj = d.as_object_mut().expect("object");
        obj.insert("actionOverrides".into(), json!([]));
        obj.insert("childRelationships".into(), Json::Array(children));
        obj.insert("compactLayoutable".into(), json!(true));
        obj.insert(
            "fields".into(),
            Json::Array(self.fields.iter().map(FieldDef::describe).collect()),
        );
        obj.insert("listviewable".into(), Json::Null);
        obj.insert("lookupLayoutable".into(), Json::Null);
        obj.insert("namedLayoutInfos".into(), json!([]));
        obj.insert("networkScopeFieldName".into(), Json::Null);
        obj.insert(
            "recordTypeInfos".into(),
            json!([{"active":true,"available":true,"defaultRecordTypeMapping":true,"developerName":"Master",
                    "master":true,"name":"Master","recordTypeId":"012000000000000AAA","urls":{}}]),
        );
        obj.insert("searchLayoutable".into(), json!(true));
        obj.insert(
            "supportedScopes".into(),
            json!([{"label":"All","name":"everything"}]),
        );
        d
    }
}

pub struct Schema {
    pub objects: Vec<ObjectDef>,
}

impl Schema {
    pub fn object_index(&self, name: &str) -> Option<usize> {
        self.objects
            .iter()
            .position(|o| o.name.eq_ignore_ascii_case(name))
    }

    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.object_index(name).map(|i| &self.objects[i])
    }

    pub fn object_by_prefix(&self, prefix: &str) -> Option<usize> {
        self.objects.iter().position(|o| o.key_prefix == prefix)
    }

    /// The org every simulator serves: the objects SPEC.md section 2 names, plus User and
    /// Organization, which clients query (`SELECT IsSandbox FROM Organization`, `Owner.Name`),
    /// plus [`SYNC_OBJECTS`] small custom objects, so one connection can carry as many mappings
    /// as a real org with many custom objects does.
    pub fn standard() -> Schema {
        let mut objects = vec![
            user(),
            organization(),
            account(),
            contact(),
            opportunity(),
            lead(),
            case(),
            invoice(),
        ];
        objects.extend((1..=SYNC_OBJECTS).map(sync_object));
        Schema { objects }
    }

    /// The standard org plus the objects of each `--objects` describe file.
    pub fn with_object_files(files: &[std::path::PathBuf]) -> Result<Schema, String> {
        let mut schema = Schema::standard();
        let mut loaded = Vec::new();
        for file in files {
            loaded.extend(crate::objects_file::read(file).map_err(|e| e.to_string())?);
        }
        crate::objects_file::merge(&mut schema, loaded)?;
        Ok(schema)
    }
}

/// Builder shorthand: a field that is optional, createable and updateable.
fn f(name: &str, ftype: FieldType, length: u32) -> FieldDef {
    let (precision, scale, digits) = match ftype {
        FieldType::Currency => (18, 2, 0),
        FieldType::Percent => (3, 0, 0),
        FieldType::Double => (18, 2, 0),
        FieldType::Int => (0, 0, 9),
        _ => (0, 0, 0),
    };
    FieldDef {
        name: name.to_string(),
        label: label_of(name),
        ftype,
        length,
        precision,
        scale,
        digits,
        nillable: ftype != FieldType::Boolean,
        createable: true,
        updateable: true,
        defaulted_on_create: ftype == FieldType::Boolean,
        unique: false,
        external_id: false,
        name_field: false,
        custom: name.ends_with("__c"),
        filterable: !(ftype == FieldType::Textarea && length > 255),
        reference_to: vec![],
        relationship_name: None,
        picklist_values: vec![],
        calculated: false,
        calculated_formula: None,
    }
}

/// A formula field: computed by the org from `formula` whenever what it reads changes.
fn formula(name: &str, ftype: FieldType, length: u32, text: &str) -> FieldDef {
    let mut d = read_only(f(name, ftype, length));
    d.calculated = true;
    d.calculated_formula = Some(text.to_string());
    d.defaulted_on_create = true;
    d
}

fn label_of(name: &str) -> String {
    let base = name.trim_end_matches("__c").trim_end_matches("Id");
    let mut out = String::new();
    for (i, c) in base.chars().enumerate() {
        if c == '_' {
            out.push(' ');
        } else {
            if i > 0 && c.is_ascii_uppercase() && !out.ends_with(' ') {
                out.push(' ');
            }
            out.push(c);
        }
    }
    if out.is_empty() {
        name.to_string()
    } else {
        out
    }
}

fn required(mut d: FieldDef) -> FieldDef {
    d.nillable = false;
    d
}

fn name_field(mut d: FieldDef) -> FieldDef {
    d.name_field = true;
    d
}

fn read_only(mut d: FieldDef) -> FieldDef {
    d.createable = false;
    d.updateable = false;
    d
}

fn picklist(name: &str, values: &[&str]) -> FieldDef {
    let mut d = f(name, FieldType::Picklist, 255);
    d.picklist_values = values.iter().map(|v| v.to_string()).collect();
    d
}

fn multipicklist(name: &str, values: &[&str]) -> FieldDef {
    let mut d = f(name, FieldType::Multipicklist, 4099);
    d.picklist_values = values.iter().map(|v| v.to_string()).collect();
    d.filterable = true;
    d
}

fn reference(name: &str, to: &str, relationship: &str) -> FieldDef {
    let mut d = f(name, FieldType::Reference, 18);
    d.reference_to = vec![to.to_string()];
    d.relationship_name = Some(relationship.to_string());
    d
}

pub(crate) fn system_fields(with_owner: bool) -> Vec<FieldDef> {
    let mut id = read_only(f("Id", FieldType::Id, 18));
    id.nillable = false;
    id.defaulted_on_create = true;
    id.label = "Record ID".into();
    let mut deleted = read_only(f("IsDeleted", FieldType::Boolean, 0));
    deleted.label = "Deleted".into();
    let stamp = |name: &str| {
        let mut d = read_only(f(name, FieldType::Datetime, 0));
        d.nillable = false;
        d.defaulted_on_create = true;
        d
    };
    let user_ref = |name: &str, rel: &str| {
        let mut d = read_only(reference(name, "User", rel));
        d.nillable = false;
        d.defaulted_on_create = true;
        d
    };
    let mut fields = vec![
        id,
        deleted,
        stamp("CreatedDate"),
        user_ref("CreatedById", "CreatedBy"),
        stamp("LastModifiedDate"),
        user_ref("LastModifiedById", "LastModifiedBy"),
        stamp("SystemModstamp"),
    ];
    if with_owner {
        let mut owner = reference("OwnerId", "User", "Owner");
        owner.nillable = false;
        owner.defaulted_on_create = true;
        fields.push(owner);
    }
    fields
}

fn object(
    name: &str,
    plural: &str,
    prefix: &str,
    with_owner: bool,
    fields: Vec<FieldDef>,
) -> ObjectDef {
    let mut all = system_fields(with_owner);
    all.extend(fields);
    ObjectDef {
        name: name.to_string(),
        label: label_of(name),
        label_plural: plural.to_string(),
        key_prefix: prefix.to_string(),
        custom: name.ends_with("__c"),
        writable: true,
        fields: all,
    }
}

const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Finance",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Manufacturing",
    "Media",
    "Retail",
    "Technology",
    "Utilities",
];
const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
const RATINGS: &[&str] = &["Hot", "Warm", "Cold"];

fn user() -> ObjectDef {
    let mut o = object(
        "User",
        "Users",
        "005",
        false,
        vec![
            name_field(read_only(f("Name", FieldType::String, 121))),
            required(f("Username", FieldType::String, 80)),
            required(f("LastName", FieldType::String, 80)),
            required(f("Email", FieldType::Email, 128)),
            f("IsActive", FieldType::Boolean, 0),
        ],
    );
    o.writable = false;
    o
}

fn organization() -> ObjectDef {
    let mut o = object(
        "Organization",
        "Organizations",
        "00D",
        false,
        vec![
            name_field(required(f("Name", FieldType::String, 80))),
            f("IsSandbox", FieldType::Boolean, 0),
            f("OrganizationType", FieldType::String, 40),
            f("InstanceName", FieldType::String, 5),
        ],
    );
    o.writable = false;
    o
}

fn account() -> ObjectDef {
    object(
        "Account",
        "Accounts",
        "001",
        true,
        vec![
            name_field(required(f("Name", FieldType::String, 255))),
            picklist(
                "Type",
                &[
                    "Prospect",
                    "Customer - Direct",
                    "Customer - Channel",
                    "Partner",
                    "Other",
                ],
            ),
            picklist("Industry", INDUSTRIES),
            f("AccountNumber", FieldType::String, 40),
            f("Phone", FieldType::Phone, 40),
            f("Website", FieldType::Url, 255),
            f("AnnualRevenue", FieldType::Currency, 0),
            f("NumberOfEmployees", FieldType::Int, 0),
            picklist("Rating", RATINGS),
            f("BillingStreet", FieldType::Textarea, 255),
            f("BillingCity", FieldType::String, 40),
            f("BillingPostalCode", FieldType::String, 20),
            f("BillingCountry", FieldType::String, 80),
            f("Description", FieldType::Textarea, 32000),
        ],
    )
}

fn contact() -> ObjectDef {
    let mut name = read_only(f("Name", FieldType::String, 121));
    name.name_field = true;
    object(
        "Contact",
        "Contacts",
        "003",
        true,
        vec![
            reference("AccountId", "Account", "Account"),
            f("FirstName", FieldType::String, 40),
            required(f("LastName", FieldType::String, 80)),
            name,
            f("Email", FieldType::Email, 80),
            f("Phone", FieldType::Phone, 40),
            f("Title", FieldType::String, 128),
            f("Birthdate", FieldType::Date, 0),
            picklist("LeadSource", LEAD_SOURCES),
            f("HasOptedOutOfEmail", FieldType::Boolean, 0),
            f("MailingCity", FieldType::String, 40),
            f("Description", FieldType::Textarea, 32000),
            formula(
                "Account_Summary__c",
                FieldType::String,
                1300,
                "Account.Name & ' / ' & TEXT(Account.Industry)",
            ),
        ],
    )
}

fn opportunity() -> ObjectDef {
    object(
        "Opportunity",
        "Opportunities",
        "006",
        true,
        vec![
            reference("AccountId", "Account", "Account"),
            name_field(required(f("Name", FieldType::String, 120))),
            required(picklist(
                "StageName",
                &[
                    "Prospecting",
                    "Qualification",
                    "Proposal/Price Quote",
                    "Negotiation/Review",
                    "Closed Won",
                    "Closed Lost",
                ],
            )),
            required(f("CloseDate", FieldType::Date, 0)),
            f("Amount", FieldType::Currency, 0),
            f("Probability", FieldType::Percent, 0),
            f("TotalOpportunityQuantity", FieldType::Double, 0),
            picklist("LeadSource", LEAD_SOURCES),
            f("IsPrivate", FieldType::Boolean, 0),
            f("NextStep", FieldType::String, 255),
            f("Description", FieldType::Textarea, 32000),
            formula(
                "Days_To_Close__c",
                FieldType::Double,
                0,
                "CloseDate - TODAY()",
            ),
        ],
    )
}

fn lead() -> ObjectDef {
    let mut status = required(picklist(
        "Status",
        &[
            "Open - Not Contacted",
            "Working - Contacted",
            "Closed - Converted",
            "Closed - Not Converted",
        ],
    ));
    status.defaulted_on_create = true;
    object(
        "Lead",
        "Leads",
        "00Q",
        true,
        vec![
            f("FirstName", FieldType::String, 40),
            required(f("LastName", FieldType::String, 80)),
            required(f("Company", FieldType::String, 255)),
            f("Email", FieldType::Email, 80),
            f("Phone", FieldType::Phone, 40),
            status,
            picklist("Industry", INDUSTRIES),
            picklist("Rating", RATINGS),
            f("AnnualRevenue", FieldType::Currency, 0),
            f("NumberOfEmployees", FieldType::Int, 0),
            f("Website", FieldType::Url, 255),
            f("IsConverted", FieldType::Boolean, 0),
            f("Description", FieldType::Textarea, 32000),
        ],
    )
}

fn case() -> ObjectDef {
    let mut number = read_only(f("CaseNumber", FieldType::String, 30));
    number.name_field = true;
    number.defaulted_on_create = true;
    let mut status = picklist("Status", &["New", "Working", "Escalated", "Closed"]);
    status.defaulted_on_create = true;
    object(
        "Case",
        "Cases",
        "500",
        true,
        vec![
            number,
            reference("AccountId", "Account", "Account"),
            reference("ContactId", "Contact", "Contact"),
            f("Subject", FieldType::String, 255),
            status,
            picklist("Priority", &["High", "Medium", "Low"]),
            picklist("Origin", &["Phone", "Email", "Web"]),
            f("IsEscalated", FieldType::Boolean, 0),
            f("SuppliedEmail", FieldType::Email, 80),
            f("ClosedDate", FieldType::Datetime, 0),
            f("Description", FieldType::Textarea, 32000),
        ],
    )
}

fn invoice() -> ObjectDef {
    let mut ext = f("External_Id__c", FieldType::String, 255);
    ext.external_id = true;
    ext.unique = true;
    ext.label = "External Id".into();
    let mut quantity = f("Quantity__c", FieldType::Double, 0);
    quantity.precision = 18;
    quantity.scale = 0;
    object(
        "Invoice__c",
        "Invoices",
        "a00",
        true,
        vec![
            name_field(required(f("Name", FieldType::String, 80))),
            ext,
            reference("Account__c", "Account", "Account__r"),
            f("Amount__c", FieldType::Currency, 0),
            f("Tax_Rate__c", FieldType::Percent, 0),
            quantity,
            f("Line_Count__c", FieldType::Int, 0),
            picklist("Status__c", &["Draft", "Sent", "Paid", "Void"]),
            multipicklist(
                "Tags__c",
                &["Priority", "Recurring", "Disputed", "Export", "Tax-Exempt"],
            ),
            f("Issued_Date__c", FieldType::Date, 0),
            f("Paid_At__c", FieldType::Datetime, 0),
            f("Paid__c", FieldType::Boolean, 0),
            f("Contact_Email__c", FieldType::Email, 80),
            f("Contact_Phone__c", FieldType::Phone, 40),
            f("Portal_Url__c", FieldType::Url, 255),
            f("Notes__c", FieldType::Textarea, 131072),
        ],
    )
}

/// How many `SyncNN__c` objects the org has.
pub const SYNC_OBJECTS: u32 = 14;

/// `Sync01__c` .. `Sync14__c`: a custom object of a few common types each, with consecutive
/// custom-object key prefixes after Invoice__c's `a00` (`a01`..`a0E`).
fn sync_object(n: u32) -> ObjectDef {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let name = format!("Sync{n:02}__c");
    let prefix = format!("a0{}", DIGITS[n as usize] as char);
    let mut o = object(
        &name,
        &format!("Sync {n:02} Records"),
        &prefix,
        true,
        vec![
            name_field(required(f("Name", FieldType::String, 80))),
            reference("Account__c", "Account", "Account__r"),
            f("Amount__c", FieldType::Currency, 0),
            f("Units__c", FieldType::Int, 0),
            picklist("Stage__c", &["New", "Active", "Done"]),
            f("Due_Date__c", FieldType::Date, 0),
            f("Done__c", FieldType::Boolean, 0),
            f("Note__c", FieldType::String, 255),
        ],
    );
    o.label = format!("Sync {n:02}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syncable_type_is_covered() {
        let schema = Schema::standard();
        use FieldType::*;
        for t in [
            Id,
            Reference,
            String,
            Textarea,
            Picklist,
            Multipicklist,
            Boolean,
            Int,
            Double,
            Currency,
            Percent,
            Date,
            Datetime,
            Email,
            Phone,
            Url,
        ] {
            assert!(
                schema
                    .objects
                    .iter()
                    .any(|o| o.fields.iter().any(|f| f.ftype == t)),
                "no field of type {t:?}"
            );
        }
        let notes = schema
            .object("invoice__c")
            .unwrap()
            .field("notes__c")
            .unwrap();
        assert_eq!(notes.length, 131072);
        assert!(!notes.filterable);
    }

    #[test]
    fn sync_objects_are_distinct_custom_objects() {
        let schema = Schema::standard();
        let sync: Vec<&ObjectDef> = schema
            .objects
            .iter()
            .filter(|o| o.name.starts_with("Sync"))
            .collect();
        assert_eq!(sync.len(), SYNC_OBJECTS as usize);
        assert_eq!(sync[0].name, "Sync01__c");
        assert_eq!(sync[13].name, "Sync14__c");
        assert_eq!(sync[13].key_prefix, "a0E");
        let mut prefixes: Vec<&str> = schema
            .objects
            .iter()
            .map(|o| o.key_prefix.as_str())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(
            prefixes.len(),
            schema.objects.len(),
            "key prefixes are unique"
        );
        for o in sync {
            assert!(o.custom && o.writable);
            assert!(o
                .fields
                .iter()
                .skip(F_SYSTEM_MODSTAMP + 1)
                .all(|f| f.custom || f.name == "Name" || f.name == "OwnerId"));
        }
    }

    #[test]
    fn system_fields_sit_at_fixed_positions() {
        for o in Schema::standard().objects {
            assert_eq!(o.fields[F_ID].name, "Id");
            assert_eq!(o.fields[F_IS_DELETED].name, "IsDeleted");
            assert_eq!(o.fields[F_SYSTEM_MODSTAMP].name, "SystemModstamp");
            assert_eq!(o.fields[F_CREATED_DATE].name, "CreatedDate");
            assert_eq!(o.fields[F_LAST_MODIFIED_DATE].name, "LastModifiedDate");
        }
    }

    #[test]
    fn required_fields_follow_describe_flags() {
        let schema = Schema::standard();
        let account = schema.object("Account").unwrap();
        let required: Vec<_> = account
            .fields
            .iter()
            .filter(|f| f.required_on_create())
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(required, vec!["Name"]);
        let opp = schema.object("Opportunity").unwrap();
        let required: Vec<_> = opp
            .fields
            .iter()
            .filter(|f| f.required_on_create())
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(required, vec!["Name", "StageName", "CloseDate"]);
    }
}
