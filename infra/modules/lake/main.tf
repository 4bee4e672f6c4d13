# The Parquet lake: private, versioned, encrypted with the stack's key, TLS only. Objects age
# from hot (Standard) to warm (Standard-IA) to cold (Glacier Instant Retrieval), as AtlasCo's
# time partitions do in PostgreSQL; the warehouse reads the hot ones, so COPY never waits on a
# restore.

data "aws_caller_identity" "current" {}

resource "aws_s3_bucket" "lake" {
  bucket        = "${var.name}-lake-${data.aws_caller_identity.current.account_id}"
  force_destroy = var.settings.force_destroy
  #checkov:skip=CKV_AWS_144:The lake is rebuilt from Kafka and the source (freshet replay); a second region's copy is a choice for the account, not this stack.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events: the warehouse loads from Freshet's manifests.
  #checkov:skip=CKV_AWS_18:Access is logged by CloudTrail data events, configured for the account.
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    id     = "hot-warm-cold"
    status = "Enabled"
    filter {
      prefix = "${var.prefix}/"
    }
    transition {
      days          = var.settings.warm_after_days
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = var.settings.cold_after_days
      storage_class = "GLACIER_IR"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.settings.noncurrent_expire_days
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "lake" {
  statement {
    sid     = "DenyPlaintext"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.lake.json
}
