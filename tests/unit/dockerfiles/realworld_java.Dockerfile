FROM ubuntu:22.04
LABEL org.opencontainers.image.title="java app" \
      org.opencontainers.image.source="https://example.com/repo"
ARG DEBIAN_FRONTEND=noninteractive
RUN apt update && apt install openjdk-17-jdk -y
ENV JAVA_HOME /usr/lib/jvm/java-17-openjdk-amd64
COPY target/*.jar /opt/app/app.jar
WORKDIR /opt/app
ENTRYPOINT ["java", "-jar", "app.jar"]
CMD ["--server.port=8080"]
