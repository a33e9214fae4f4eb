# Off-host copies of the backups the `backup` role takes (README: Operate).
resource "aws_s3_bucket" "backup" {
  count = var.backup_bucket_enabled ? 1 : 0

  # checkov:skip=CKV_AWS_18: access logs would need a second bucket; only the VM's role can reach this one
  # checkov:skip=CKV_AWS_144: one copy in another region is more than a single-VM stack needs; versioning guards against deletion
  # checkov:skip=CKV2_AWS_62: nothing consumes object events; BackupTooOld alerts on missing backups
  bucket_prefix = "${var.name}-backup-"
  force_destroy = var.backup_bucket_force_destroy

  tags = merge(local.tags, { Name = "${var.name}-backup" })
}

resource "aws_s3_bucket_public_access_block" "backup" {
  count = var.backup_bucket_enabled ? 1 : 0

  bucket                  = aws_s3_bucket.backup[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "backup" {
  count = var.backup_bucket_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "backup" {
  count = var.backup_bucket_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backup" {
  count = var.backup_bucket_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  rule {
    # The account's aws/s3 key; bucket keys keep the KMS requests (and cost) down.
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "backup" {
  count = var.backup_bucket_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id

  # Current objects stay: vmbackup's unchanged parts are old but still needed.
  # Overwritten and deleted ones (old parts, pruned dumps) expire.
  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.backup_noncurrent_days
    }
    expiration {
      expired_object_delete_marker = true
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.backup]
}

data "aws_iam_policy_document" "backup_bucket" {
  count = var.backup_bucket_enabled ? 1 : 0

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.backup[0].arn,
      "${aws_s3_bucket.backup[0].arn}/*",
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

resource "aws_s3_bucket_policy" "backup" {
  count = var.backup_bucket_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  policy = data.aws_iam_policy_document.backup_bucket[0].json

  depends_on = [aws_s3_bucket_public_access_block.backup]
}

# The VM may list, read, write and delete in this bucket, and nothing else in S3.
data "aws_iam_policy_document" "backup_access" {
  count = var.backup_bucket_enabled ? 1 : 0

  statement {
    sid       = "ListTheBackupBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.backup[0].arn]
  }
  statement {
    sid       = "ReadWriteBackups"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.backup[0].arn}/*"]
  }
}

resource "aws_iam_role_policy" "backup" {
  count = var.backup_bucket_enabled ? 1 : 0

  name   = "${var.name}-backup-bucket"
  role   = aws_iam_role.stack.id
  policy = data.aws_iam_policy_document.backup_access[0].json
}
