variable "aws_region" {
  description = "AWS region to create the stack in."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Name of this stack; prefixes every resource and tags them, so the Ansible inventory can find the VM."
  type        = string
  default     = "btc-usd-stack"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "admin_cidrs" {
  description = "IPv4 CIDRs allowed to SSH to the VM (port 22), e.g. [\"203.0.113.7/32\"]. Never the whole internet: use SSM Session Manager when you have no fixed address."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0
    error_message = "admin_cidrs is empty: give the IPv4 CIDRs you administer from, e.g. [\"203.0.113.7/32\"] (find yours with `curl -4 ifconfig.me`)."
  }
  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrnetmask(c))])
    error_message = "admin_cidrs must hold IPv4 CIDRs such as 203.0.113.7/32."
  }
  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrnetmask(c)) && try(tonumber(split("/", c)[1]) >= 8, false)])
    error_message = "admin_cidrs must not open SSH to the world (0.0.0.0/0) or to a range wider than /8: SSH brute-forcing starts within minutes. Use your own address, e.g. 203.0.113.7/32, or SSM Session Manager."
  }
}

variable "allowed_cidrs" {
  description = "IPv4 CIDRs allowed to reach Grafana and the Airflow UI over HTTP/HTTPS (80/443). [\"0.0.0.0/0\"] publishes the web UIs; [] exposes nothing."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "allowed_cidrs must hold IPv4 CIDRs such as 198.51.100.0/24 or 0.0.0.0/0."
  }
}

variable "ssh_public_key" {
  description = "OpenSSH public key for the VM's admin user (one line, e.g. the content of ~/.ssh/id_ed25519.pub)."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/]{40,}={0,3}( [^\\r\\n]*)?$", trimspace(var.ssh_public_key)))
    error_message = "ssh_public_key must be one OpenSSH public key line such as 'ssh-ed25519 AAAA... you@laptop' (the .pub file, never the private key)."
  }
}

variable "instance_type" {
  description = "EC2 instance type. t3.small (2 vCPU, 2 GiB) fits the containers' memory limits (stack_memory_limits, 1.6 GiB) and the OS; a smaller one is refused by make deploy."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an EC2 instance type such as t3.medium."
  }
}

variable "ami_id" {
  description = "AMI to boot. null selects the latest official Debian 12 (bookworm) amd64 image."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0, or be null for the latest Debian 12."
  }
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted gp3 root volume (OS, Docker images), in GiB."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size_gb >= 8 && var.root_volume_size_gb <= 1024
    error_message = "root_volume_size_gb must be between 8 and 1024."
  }
}

variable "data_volume_size_gb" {
  description = "Size of the separate encrypted gp3 data volume (databases, metrics, backups), in GiB. It outlives instance replacement."
  type        = number
  default     = 20

  validation {
    condition     = var.data_volume_size_gb >= 1 && var.data_volume_size_gb <= 16384
    error_message = "data_volume_size_gb must be between 1 and 16384."
  }
}

variable "data_mount_path" {
  description = "Where cloud-init mounts the data volume on the VM; the Ansible roles keep their data below it."
  type        = string
  default     = "/srv/btc-usd-stack"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]+$", var.data_mount_path)) && var.data_mount_path != "/"
    error_message = "data_mount_path must be an absolute path other than /, e.g. /srv/btc-usd-stack."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the stack's VPC; the public subnet takes its first /24."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrsubnet(var.vpc_cidr, 8, 0))
    error_message = "vpc_cidr must be an IPv4 CIDR of /24 or wider minus 8 bits, e.g. 10.42.0.0/16."
  }
}

variable "tags" {
  description = "Extra tags for every resource (e.g. { Owner = \"ops\", CostCenter = \"42\" })."
  type        = map(string)
  default     = {}
}

variable "backup_bucket_enabled" {
  description = "Create an S3 bucket for the stack's backups (encrypted, versioned, private) and let the VM write to it, and only to it."
  type        = bool
  default     = true
}

variable "backup_noncurrent_days" {
  description = "Days an overwritten or deleted backup object is kept in the bucket before it expires."
  type        = number
  default     = 90

  validation {
    condition     = var.backup_noncurrent_days >= 1 && floor(var.backup_noncurrent_days) == var.backup_noncurrent_days
    error_message = "backup_noncurrent_days must be a whole number of days, at least 1."
  }
}

variable "backup_bucket_force_destroy" {
  description = "Let `terraform destroy` delete the backup bucket with the backups in it. Keep false outside tests: the backups should outlive the VM."
  type        = bool
  default     = false
}

variable "topology" {
  description = "\"single\": the whole stack on one VM. \"ha\": control, worker and time-series hosts in two availability zones behind a load balancer, with Airflow's database on RDS Multi-AZ (docs/scaling.md)."
  type        = string
  default     = "single"

  validation {
    condition     = contains(["single", "ha"], var.topology)
    error_message = "topology must be \"single\" or \"ha\"."
  }
}

variable "ha_availability_zones" {
  description = "The two availability zones of topology \"ha\", e.g. [\"eu-west-1a\", \"eu-west-1b\"]. [] takes the region's zones a and b."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.ha_availability_zones) == 0 || (length(distinct(var.ha_availability_zones)) == 2 && length(var.ha_availability_zones) == 2)
    error_message = "ha_availability_zones must name two different zones, e.g. [\"eu-west-1a\", \"eu-west-1b\"], or be [] for the region's a and b."
  }
  validation {
    condition     = alltrue([for zone in var.ha_availability_zones : startswith(zone, var.aws_region)])
    error_message = "ha_availability_zones must be zones of aws_region (${var.aws_region}), e.g. [\"${var.aws_region}a\", \"${var.aws_region}b\"]."
  }
}

variable "ha_control_count" {
  description = "Control hosts in topology \"ha\" (Airflow API server, scheduler and DAG processor, Grafana, the proxy); two or more keep a scheduler when one host is lost."
  type        = number
  default     = 2

  validation {
    condition     = var.ha_control_count >= 2 && var.ha_control_count <= 5 && floor(var.ha_control_count) == var.ha_control_count
    error_message = "ha_control_count must be a whole number from 2 to 5: one control host is no HA, and more than 5 schedulers mostly contend for the database."
  }
}

variable "ha_worker_count" {
  description = "Airflow worker hosts in topology \"ha\", spread over the two availability zones."
  type        = number
  default     = 2

  validation {
    condition     = var.ha_worker_count >= 1 && var.ha_worker_count <= 20 && floor(var.ha_worker_count) == var.ha_worker_count
    error_message = "ha_worker_count must be a whole number from 1 to 20."
  }
}

variable "ha_instance_types" {
  description = "EC2 instance type of each tier in topology \"ha\": control, worker and tsdb (the two VictoriaMetrics hosts, with vmalert and Alertmanager)."
  type = object({
    control = string
    worker  = string
    tsdb    = string
  })
  default = {
    control = "t3.medium"
    worker  = "t3.small"
    tsdb    = "t3.small"
  }

  validation {
    condition     = alltrue([for t in values(var.ha_instance_types) : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "ha_instance_types must hold EC2 instance types such as t3.medium."
  }
}

variable "ha_db_instance_class" {
  description = "RDS instance class of Airflow's MySQL database in topology \"ha\" (Multi-AZ: a standby in the other zone)."
  type        = string
  default     = "db.t4g.small"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.ha_db_instance_class))
    error_message = "ha_db_instance_class must be an RDS instance class such as db.t4g.small."
  }
}

variable "ha_db_backup_retention_days" {
  description = "Days RDS keeps the automated backups (point-in-time restore) of Airflow's database in topology \"ha\"."
  type        = number
  default     = 7

  validation {
    condition     = var.ha_db_backup_retention_days >= 1 && var.ha_db_backup_retention_days <= 35 && floor(var.ha_db_backup_retention_days) == var.ha_db_backup_retention_days
    error_message = "ha_db_backup_retention_days must be a whole number from 1 to 35 (0 would turn the automated backups off)."
  }
}

variable "ha_deletion_protection" {
  description = "Refuse to delete Airflow's RDS database and the load balancer (topology \"ha\"). Keep true outside tests; a destroy stops until it is set false."
  type        = bool
  default     = true
}
