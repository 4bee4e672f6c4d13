# One group per service, and rules that name the group allowed in: Freshet reaches PostgreSQL,
# MSK and the endpoints; nothing else reaches anything.

resource "aws_security_group" "freshet" {
  name        = "${var.name}-freshet"
  description = "Freshet tasks: outbound to PostgreSQL, MSK and the AWS endpoints only"
  vpc_id      = aws_vpc.this.id
  #checkov:skip=CKV2_AWS_5:Attached to the ECS service in modules/freshet, through this module's output.
}

resource "aws_security_group" "postgres" {
  name        = "${var.name}-postgres"
  description = "RDS PostgreSQL: inbound from Freshet only"
  vpc_id      = aws_vpc.this.id
  #checkov:skip=CKV2_AWS_5:Attached to the RDS instances in modules/postgres, through this module's output.
}

resource "aws_security_group" "kafka" {
  name        = "${var.name}-kafka"
  description = "MSK brokers: inbound from Freshet only"
  vpc_id      = aws_vpc.this.id
  #checkov:skip=CKV2_AWS_5:Attached to the MSK brokers in modules/kafka, through this module's output.
}

resource "aws_security_group" "warehouse" {
  name        = "${var.name}-warehouse"
  description = "Redshift: no inbound; COPY reads S3 through the gateway endpoint"
  vpc_id      = aws_vpc.this.id
  #checkov:skip=CKV2_AWS_5:Attached to the Redshift cluster in modules/warehouse, through this module's output.
}

resource "aws_security_group" "state" {
  name        = "${var.name}-state"
  description = "Freshet's state file system (EFS): NFS from Freshet only"
  vpc_id      = aws_vpc.this.id
  #checkov:skip=CKV2_AWS_5:Attached to the EFS mount targets in modules/freshet, through this module's output.
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "Interface endpoints: HTTPS from the VPC"
  vpc_id      = aws_vpc.this.id
}

locals {
  # MSK: 9098 is IAM over TLS, the only listener Freshet uses.
  freshet_to = {
    postgres = { group = aws_security_group.postgres.id, from = 5432, to = 5432 }
    kafka    = { group = aws_security_group.kafka.id, from = 9098, to = 9098 }
    state    = { group = aws_security_group.state.id, from = 2049, to = 2049 }
  }
}

resource "aws_vpc_security_group_egress_rule" "freshet" {
  for_each                     = local.freshet_to
  security_group_id            = aws_security_group.freshet.id
  description                  = "Freshet to ${each.key}"
  referenced_security_group_id = each.value.group
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
}

resource "aws_vpc_security_group_ingress_rule" "from_freshet" {
  for_each                     = local.freshet_to
  security_group_id            = each.value.group
  description                  = "${each.key} from Freshet"
  referenced_security_group_id = aws_security_group.freshet.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.from
  to_port                      = each.value.to
}

resource "aws_vpc_security_group_egress_rule" "freshet_endpoints" {
  security_group_id            = aws_security_group.freshet.id
  description                  = "Freshet to the interface endpoints"
  referenced_security_group_id = aws_security_group.endpoints.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_egress_rule" "freshet_s3" {
  security_group_id = aws_security_group.freshet.id
  description       = "Freshet to S3 through the gateway endpoint"
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "endpoints" {
  security_group_id = aws_security_group.endpoints.id
  description       = "HTTPS from inside the VPC"
  cidr_ipv4         = var.cidr
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# The replica streams from the primary inside RDS; Redshift's COPY goes to S3.
resource "aws_vpc_security_group_egress_rule" "warehouse_s3" {
  security_group_id = aws_security_group.warehouse.id
  description       = "Redshift COPY from S3 through the gateway endpoint"
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}
